"""The Redis limiter's script (`ratelimit.RedisRateLimiter`): the shared bucket, the senders'
buckets and the slots of deferred messages, updated atomically on the Redis server.

Celery workers cannot choose: each task is one message, taken in the queue's order. Put back
for "when the token is there", every deferred message of a busy number came back at the same
moment, one was sent and the others were put back again: with a backlog on 40 numbers at 1/s,
two workers ran each message 5.5 times (4.5 deferrals; bench/throttling.py, 2,000 messages),
58.8 ms of CPU per message sent, and reached 85 % of the allowed rate. So the Redis limiter
keeps the deferred messages in line: a deferred message, named by its `ticket`, gets the first
slot free both for its number (one 1/SMS_RATE_LIMIT_PER_SENDER after the number's last one
reserved) and on the account (one 1/rate after the account's last one), and is due then; a
message that holds a slot only needs the tokens (it waits out a late predecessor's last fraction
of a second); a message without one queues behind the slots reserved. The account's slots keep
the deferred messages from coming back faster than the shared rate lets them out: 40 numbers'
slots at 1/s each against 30/s made every message later than the last, and each waited on a
worker for its number's token. A reservation nobody comes back for (a cancelled message) leaves
its slots unused.
"""

# KEYS[1] the shared bucket, KEYS[2] the sender's bucket (or "" for none), KEYS[3] the sender's
# reservations (ticket → slot).
# ARGV[1] "take", "throttle" or "rate"; ARGV[2] SMS_RATE_LIMIT; ARGV[3] per-sender rate;
# ARGV[4] THROTTLE_FLOOR; ARGV[5] THROTTLE_DECREASE; ARGV[6] RECOVERY_SECONDS;
# ARGV[7] the state's time to live (ms); ARGV[8] for "take" the ticket ("" for none), for
# "throttle" the count of decreases when the throttled send took its token ("" if unknown);
# ARGV[9] SHARED_PACING: tokens come at that share of the rate; ARGV[10] SHARED_BURST: the
# shared bucket holds up to that many.
# "take" returns {shared wait, sender's wait, state, decreases}: both waits "0" when the tokens
# were taken, else the seconds until each bucket has one (for a message without a slot while
# slots are reserved, until the first one free for its number and on the account); state is
# RESERVED when that slot was just reserved for the ticket, HELD when the ticket holds one
# already, else ""; decreases counts the throttles that lowered the rate so far. The slots
# reserved end at `horizon` of each hash. "throttle" and "rate" return the shared rate after the
# call. Strings: Redis would truncate a Lua number.
TOKEN_BUCKET_LUA = """
local op = ARGV[1]
local max_rate = tonumber(ARGV[2])
local per_sender = tonumber(ARGV[3])
local epsilon = 1e-9
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated', 'rate', 'since', 'decreases')
local decreases = state[5] or '0'
local rate = max_rate
local throttled_rate = tonumber(state[3])
local since = tonumber(state[4])
if throttled_rate ~= nil and since ~= nil then
  rate = math.min(max_rate,
    throttled_rate + math.max(0, now - since) * max_rate / tonumber(ARGV[6]))
end
if op == 'rate' then
  return tostring(rate)
end
if op == 'throttle' then
  if ARGV[8] ~= '' and ARGV[8] ~= decreases then
    return tostring(rate)
  end
  local floor = math.min(tonumber(ARGV[4]), max_rate)
  rate = math.max(floor, rate * tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'since', tostring(now))
  redis.call('HINCRBY', KEYS[1], 'decreases', 1)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[7]))
  return tostring(rate)
end
local wait = 0
local sender_wait = 0
local tokens = 1
rate = rate * tonumber(ARGV[9])
if max_rate > 0 then
  tokens = tonumber(state[1])
  local updated = tonumber(state[2])
  if tokens == nil or updated == nil then
    tokens = 1
    updated = now
  end
  tokens = math.min(tonumber(ARGV[10]), tokens + math.max(0, now - updated) * rate)
  if tokens < 1 - epsilon then
    wait = (1 - tokens) / rate
  end
end
local ticket = ARGV[8]
local result = ''
if per_sender > 0 and KEYS[2] ~= '' then
  local sender_state = redis.call('HMGET', KEYS[2], 'tokens', 'updated', 'horizon')
  local sender_tokens = tonumber(sender_state[1])
  local sender_updated = tonumber(sender_state[2])
  if sender_tokens == nil or sender_updated == nil then
    sender_tokens = 1
    sender_updated = now
  end
  sender_tokens = math.min(1, sender_tokens + math.max(0, now - sender_updated) * per_sender)
  if sender_tokens < 1 - epsilon then
    sender_wait = (1 - sender_tokens) / per_sender
  end
  local horizon = tonumber(sender_state[3]) or 0
  local holding = ticket ~= '' and redis.call('HEXISTS', KEYS[3], ticket) == 1
  if not holding then
    -- Deferred messages hold the next slots of this number, and of the account: this one
    -- queues behind them.
    local queued = math.max(horizon, tonumber(redis.call('HGET', KEYS[1], 'horizon')) or 0)
    sender_wait = math.max(sender_wait, queued - now)
  end
  if wait == 0 and sender_wait == 0 then
    tokens = math.max(0, tokens - 1)
    sender_tokens = math.max(0, sender_tokens - 1)
    if holding then
      redis.call('HDEL', KEYS[3], ticket)
    end
  elseif holding then
    result = 'held'
  elseif ticket ~= '' and sender_wait > wait then
    -- Deferred: the first slot free for this number and on the account. The account's next
    -- slot moves on only when it is the one taken: a slot the number's own queue puts later
    -- leaves the account's free for the next message.
    local slot = now + sender_wait
    horizon = slot + 1 / per_sender
    if max_rate > 0 then
      local account = math.max(now, tonumber(redis.call('HGET', KEYS[1], 'horizon')) or 0)
      if slot < account + 1 / rate then
        redis.call('HSET', KEYS[1], 'horizon', tostring(account + 1 / rate))
      end
    end
    redis.call('HSET', KEYS[3], ticket, tostring(slot))
    redis.call('PEXPIRE', KEYS[3], math.ceil((horizon - now) * 1000) + tonumber(ARGV[7]))
    result = 'reserved'
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(sender_tokens), 'updated', tostring(now),
    'horizon', tostring(horizon))
  redis.call('PEXPIRE', KEYS[2],
    math.ceil(1000 * math.max(1 / per_sender, horizon - now)) + 1000)
elseif wait == 0 then
  tokens = math.max(0, tokens - 1)
end
if max_rate > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[7]))
end
return {tostring(wait), tostring(sender_wait), result, decreases}
"""
