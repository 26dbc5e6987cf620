#!/bin/sh
# Start-up time of management commands: the best of N runs, wall clock and CPU (user + system;
# steadier than the wall clock on a busy machine), plus the time `check` spends importing.
# Usage, from the checkout: sh bench/startup.sh [N]
N=${1:-5}
export DJANGO_DEBUG=1
out=$(mktemp)
for command in "help" "check" "expire_conversations" "simulate_sms --help"; do
    best_wall=""
    best_cpu=""
    for _ in $(seq "$N"); do
        # shellcheck disable=SC2086
        /usr/bin/time -f '%e %U %S' -o "$out" .venv/bin/python manage.py $command >/dev/null 2>&1
        wall=$(awk '{printf "%d", $1 * 1000}' "$out")
        cpu=$(awk '{printf "%d", ($2 + $3) * 1000}' "$out")
        if [ -z "$best_wall" ] || [ "$wall" -lt "$best_wall" ]; then best_wall=$wall; fi
        if [ -z "$best_cpu" ] || [ "$cpu" -lt "$best_cpu" ]; then best_cpu=$cpu; fi
    done
    printf '%-24s best of %s: wall %5s ms  cpu %5s ms\n' "$command" "$N" "$best_wall" "$best_cpu"
done
rm -f "$out"
.venv/bin/python -X importtime manage.py check 2>&1 >/dev/null \
    | awk -F'|' '/^import time: +[0-9]/ && $3 ~ /^ [^ ]/ { total += $2 }
        END { printf "imports during check: %d ms\n", total / 1000 }'
