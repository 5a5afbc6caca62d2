"""The saga store's two Lua scripts on one Redis (or Sentinel's master): accepting a
request (`CREATE`) and a transition's compare-and-set (`COMMIT`), each writing the state
and publishing its messages in one atomic step (saga_store.py runs them; on Redis Cluster
saga_cluster.py has single-slot versions writing to the request's outbox)."""

CREATE = """
-- KEYS: req, deadlines, requests, subject_index, active, idem, credentials, [link]
-- ARGV: rid, doc, deadline ('' = none), created_score, idem_ttl, messages (JSON),
--       body fingerprint, credentials (JSON, '' = none), credentials ttl, [link ttl]
if KEYS[6] ~= 'sortie:idem:' then
  local existing = redis.call('GET', KEYS[6])
  if existing then
    -- Submitted again: the link names the first request (none when the body differs).
    local first, fp = string.match(existing, '^(%S+) ?(.*)$')
    if KEYS[8] and (fp == '' or ARGV[7] == '' or fp == ARGV[7]) then
      redis.call('SET', KEYS[8], first, 'EX', tonumber(ARGV[10]))
    end
    return {0, existing}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ARGV[1]} end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'v', 1)
if KEYS[8] then redis.call('SET', KEYS[8], ARGV[1], 'EX', tonumber(ARGV[10])) end
if ARGV[8] ~= '' then redis.call('SET', KEYS[7], ARGV[8], 'EX', tonumber(ARGV[9])) end
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
if KEYS[6] ~= 'sortie:idem:' then
  redis.call('SET', KEYS[6], ARGV[1] .. ' ' .. ARGV[7], 'EX', tonumber(ARGV[5]))
end
for _, m in ipairs(cjson.decode(ARGV[6])) do
  redis.call('XADD', m[1], '*', 'type', m[2], 'event_id', m[3], 'request_id', m[4], 'data', m[5])
end
return {1, ARGV[1]}
"""

COMMIT = """
-- KEYS: req, deadlines, active, credentials, [stream of the entry to acknowledge]
-- ARGV: rid, expected version, doc, deadline ('' = none), finished ('1'/'0'),
--       retention seconds, messages (JSON), forget credentials ('1'/'0'),
--       [group, entry id]
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if tonumber(v) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'v', tonumber(v) + 1)
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
if ARGV[5] == '1' then
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
end
for _, m in ipairs(cjson.decode(ARGV[7])) do
  redis.call('XADD', m[1], '*', 'type', m[2], 'event_id', m[3], 'request_id', m[4], 'data', m[5])
end
if ARGV[8] == '1' then redis.call('DEL', KEYS[4]) end
if KEYS[5] then redis.call('XACK', KEYS[5], ARGV[9], ARGV[10]) end
return 1
"""
