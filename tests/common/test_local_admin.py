import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection

pytestmark = pytest.mark.django_db

local_default_only = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="local_admin serves the SQLite default only"
)


@local_default_only
def test_creates_admin_with_random_password_and_prints_it(tmp_path, capsys):
    password_file = tmp_path / "admin-password"
    call_command("local_admin", password_file=str(password_file))
    password = password_file.read_text().strip()
    assert len(password) >= 16
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)
    assert f"password: {password}" in capsys.readouterr().out

    # Runs again without changing anything and prints the same login.
    call_command("local_admin", password_file=str(password_file))
    assert password_file.read_text().strip() == password
    assert f"password: {password}" in capsys.readouterr().out


@local_default_only
def test_two_installs_get_different_passwords(tmp_path):
    call_command("local_admin", password_file=str(tmp_path / "a"))
    get_user_model().objects.all().delete()
    call_command("local_admin", password_file=str(tmp_path / "b"))
    assert (tmp_path / "a").read_text() != (tmp_path / "b").read_text()


@local_default_only
def test_lost_password_file_resets_the_password(tmp_path):
    password_file = tmp_path / "admin-password"
    call_command("local_admin", password_file=str(password_file))
    old = password_file.read_text().strip()
    password_file.unlink()
    call_command("local_admin", password_file=str(password_file))
    new = password_file.read_text().strip()
    assert new != old
    assert get_user_model().objects.get(username="admin").check_password(new)


def test_refuses_outside_the_local_default(settings, tmp_path):
    settings.SMS_PROVIDER = "vonage"
    with pytest.raises(CommandError, match="only runs for the local default"):
        call_command("local_admin", password_file=str(tmp_path / "p"))
    assert not get_user_model().objects.exists()


def test_if_local_skips_outside_the_local_default(settings, tmp_path, capsys):
    # `make run` with a Vonage account (or PostgreSQL) configured must still start.
    settings.SMS_PROVIDER = "vonage"
    call_command("local_admin", "--if-local", password_file=str(tmp_path / "p"))
    assert "No local admin login" in capsys.readouterr().out
    assert not get_user_model().objects.exists()
    assert not (tmp_path / "p").exists()
