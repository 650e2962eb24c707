//! The Lua scripts both clients run. Each multi-step operation is one script,
//! so it is atomic (Redis runs a script without interleaving other commands,
//! and freezes the clock for its duration).
//!
//! Conventions:
//! - every key a script touches carries the same hash tag as `KEYS[1]`
//!   (`{<namespace>:<store>}`), so scripts stay in one cluster slot even where
//!   they derive keys from arguments;
//! - 64-bit integers and scores leave a script as *strings* read from Redis
//!   (Lua numbers are doubles and `tostring` rounds to 14 digits);
//! - type mismatches are `WRONGTYPE` error replies, counter overflows
//!   `OVERFLOW`; domain outcomes (duplicate, version conflict, score out of
//!   range) are ordinary replies the store decodes.

use crate::clients::Lua;

/// `push`: type check, `LPUSH`, `LTRIM`, optional `PEXPIREAT`; returns `LLEN`.
/// KEYS: list. ARGV: entry, max_len, expiry (unix ms) or ''.
pub static SESSION_PUSH: Lua = Lua {
    name: "session_push",
    source: r#"
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'list' then
  return redis.error_reply('WRONGTYPE key holds another type than a history list')
end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local len = redis.call('LLEN', KEYS[1])
-- An instant already passed deletes the list; the reply is still its length as written.
if ARGV[3] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return len
"#,
};

/// Lua: runs the increment `$call` (a `redis.pcall` argument list) into
/// `r`; when it fails, tells a stored counter the step would take out of
/// range (`OVERFLOW`) from a value that is no counter (`WRONGTYPE`, naming
/// `$what`). Only then is the stored value looked at.
macro_rules! step_or_fault {
    ($call:literal, $what:literal) => {
        concat!(
            "local r = redis.pcall(",
            $call,
            ")\n",
            "if type(r) == 'table' and r['err'] then\n",
            "  if redis.call('TYPE', KEYS[1])['ok'] == 'string' then\n",
            "    local v = redis.call('GET', KEYS[1])\n",
            "    if #v <= 20 and string.match(v, '^%-?[0-9]+$') then\n",
            "      return redis.error_reply('OVERFLOW counter would leave the 64-bit range')\n",
            "    end\n",
            "  end\n",
            "  return redis.error_reply('WRONGTYPE key holds another type than ",
            $what,
            "')\n",
            "end\n"
        )
    };
}

/// `incr`: creates the counter with the TTL, or adds to a stored JSON integer
/// keeping its expiry. Returns the new value as a decimal string (read back
/// with GET: Lua numbers are doubles, exact only up to 2^53).
/// KEYS: counter. ARGV: by, expiry (unix ms) or ''.
///
/// The common case first: `SET NX` creates a missing counter at `by` with
/// its expiry (an instant already passed deletes it at once, as for any
/// write), else `INCRBY` adds (without an expiry it also creates). Only when
/// `INCRBY` fails is the stored value looked at, to tell a value that is not
/// a counter (`WRONGTYPE`) from one the addition would take out of range
/// (`OVERFLOW`).
pub static SESSION_INCR: Lua = Lua {
    name: "session_incr",
    source: concat!(
        r#"
if ARGV[2] ~= '' and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PXAT', ARGV[2]) then
  return ARGV[1]
end
"#,
        step_or_fault!("'INCRBY', KEYS[1], ARGV[1]", "an integer counter"),
        r#"
return redis.call('GET', KEYS[1])
"#
    ),
};

/// `hit`: fixed-window rate limit. The first hit creates the counter with the
/// window as TTL; later hits increment it without touching the expiry (a
/// counter without one gets the window). Returns {count as string, pttl ms}.
/// KEYS: counter. ARGV: window ms. Common case first, as in [`SESSION_INCR`].
pub static SESSION_HIT: Lua = Lua {
    name: "session_hit",
    source: concat!(
        r#"
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return {'1', tonumber(ARGV[1])}
end
"#,
        step_or_fault!("'INCR', KEYS[1]", "a rate-limit counter"),
        r#"
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {redis.call('GET', KEYS[1]), ttl}
"#
    ),
};

/// `record`: idempotent by id (the event hash doubles as the marker), range
/// check on every period board, then log + history + boards in one step.
/// Boards hold *negated* scores (see `reputation.rs`).
/// While a `rebuild` of one of the periods is under way (its marker hash
/// exists), an event the rebuild has already passed (at, id ≤ its cursor) is
/// also added to the rebuild's board, which will replace the live one.
/// KEYS: event hash, log zset, history zset, all/day/week/month boards,
/// all/day/week/month rebuild markers, all/day/week/month rebuild boards.
/// ARGV: id, event JSON, at ms, kind, subject id, delta, negated delta,
/// day/week/month EXPIREAT seconds ('' = never), max |score|.
/// Returns {0, all-time negated score} | {1, same (duplicate)} | {2} (out of range).
pub static REPUTATION_RECORD: Lua = Lua {
    name: "reputation_record",
    source: r#"
local member = ARGV[5]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, redis.call('ZSCORE', KEYS[4], member) or '0'}
end
local delta = tonumber(ARGV[6])
local max = tonumber(ARGV[11])
for i = 4, 7 do
  local cur = tonumber(redis.call('ZSCORE', KEYS[i], member) or '0')
  local new = cur - delta
  if new > max or new < -max then return {2} end
end
redis.call('HSET', KEYS[1], 'j', ARGV[2], 'k', ARGV[4], 's', member, 'd', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
for i = 4, 7 do redis.call('ZINCRBY', KEYS[i], ARGV[7], member) end
local at = tonumber(ARGV[3])
for i = 8, 11 do
  local cur = redis.call('HMGET', KEYS[i], 'at', 'id')
  if cur[1] then
    local cat = tonumber(cur[1])
    if at < cat or (at == cat and ARGV[1] <= cur[2]) then
      redis.call('ZINCRBY', KEYS[i + 4], ARGV[7], member)
      redis.call('EXPIRE', KEYS[i + 4], 3600)
    end
  end
end
for i = 5, 7 do
  local at = ARGV[i + 3]
  if at ~= '' then redis.call('EXPIREAT', KEYS[i], at) end
end
return {0, redis.call('ZSCORE', KEYS[4], member)}
"#,
};

/// `history`: newest first (score = at desc, member = hex id desc), then the
/// events' JSON. KEYS: history zset. ARGV: event key prefix, max, min, limit.
pub static REPUTATION_HISTORY: Lua = Lua {
    name: "reputation_history",
    source: r#"
local ids = redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[3], 'BYSCORE', 'REV', 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for i, id in ipairs(ids) do
  out[i] = redis.call('HGET', ARGV[1] .. id, 'j')
end
return out
"#,
};

/// A leaderboard page: entries `start..=stop` with scores, and how many
/// entries score strictly higher than the first (for its competition rank).
/// KEYS: board. ARGV: start, stop. Returns {} or {higher, {member, score, …}}.
pub static REPUTATION_PAGE: Lua = Lua {
    name: "reputation_page",
    source: r#"
local page = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
if #page == 0 then return {} end
return {redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. page[2]), page}
"#,
};

/// `around`: the subject's index, then the page around it as for
/// [`REPUTATION_PAGE`]. KEYS: board. ARGV: member, k.
/// Returns {} or {start, higher, {member, score, …}}.
pub static REPUTATION_AROUND: Lua = Lua {
    name: "reputation_around",
    source: r#"
local i = redis.call('ZRANK', KEYS[1], ARGV[1])
if not i then return {} end
local k = tonumber(ARGV[2])
local start = i - k
if start < 0 then start = 0 end
local page = redis.call('ZRANGE', KEYS[1], start, i + k, 'WITHSCORES')
return {start, redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. page[2]), page}
"#,
};

/// `rank`: {negated score, higher} or {}. KEYS: board. ARGV: member.
pub static REPUTATION_RANK: Lua = Lua {
    name: "reputation_rank",
    source: r#"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return {} end
return {s, redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. s)}
"#,
};

/// `rebuild`, first step: claims the period's rebuild for `token` (a later
/// rebuild of the same period takes it over) with its cursor before the
/// period's first log entry, and empties its boards.
/// KEYS: marker hash, rebuild user board, rebuild engine board.
/// ARGV: token, cursor `at` (the period's start in ms, or far in the past).
pub static REPUTATION_REBUILD_BEGIN: Lua = Lua {
    name: "reputation_rebuild_begin",
    source: r#"
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'at', ARGV[2], 'id', '')
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"#,
};

/// `rebuild`, each further step: adds the next `chunk` log entries after the
/// cursor (log order: `at`, then id) that lie before the period's end to the
/// rebuild's boards and moves the cursor past them. When the period's entries
/// are exhausted, the rebuild's boards replace the live ones (RENAME, with the
/// board expiry) and the marker goes. Events recorded meanwhile behind the
/// cursor were added by `record`; those ahead are read here.
/// KEYS: marker, log, rebuild user board, rebuild engine board, user board, engine board.
/// ARGV: token, ZCOUNT bound below the period ('' = none), period end ms ('' = none),
/// event key prefix, chunk, EXPIREAT or ''.
/// Returns {'more'} | {'done', subjects on both boards} | {'superseded'} | {'lost'}.
pub static REPUTATION_REBUILD_STEP: Lua = Lua {
    name: "reputation_rebuild_step",
    source: r#"
local m = redis.call('HMGET', KEYS[1], 'token', 'at', 'id')
if m[1] ~= ARGV[1] then return {'superseded'} end
local start = 0
if m[3] ~= '' then
  local r = redis.call('ZRANK', KEYS[2], m[3])
  if not r then return {'lost'} end
  start = r + 1
elseif ARGV[2] ~= '' then
  start = redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[2])
end
local n = tonumber(ARGV[5])
local entries = redis.call('ZRANGE', KEYS[2], start, start + n - 1, 'WITHSCORES')
local done = #entries < 2 * n
local last_at, last_id
for i = 1, #entries, 2 do
  local id = entries[i]
  if ARGV[3] ~= '' and tonumber(entries[i + 1]) >= tonumber(ARGV[3]) then
    done = true
    break
  end
  local f = redis.call('HMGET', ARGV[4] .. id, 'k', 's', 'd')
  if f[1] then
    local board = KEYS[3]
    if f[1] == 'e' then board = KEYS[4] end
    local d = f[3]
    local neg
    if string.sub(d, 1, 1) == '-' then neg = string.sub(d, 2) else neg = '-' .. d end
    redis.call('ZINCRBY', board, neg, f[2])
  end
  last_at, last_id = entries[i + 1], id
end
if last_id then redis.call('HSET', KEYS[1], 'at', last_at, 'id', last_id) end
if not done then
  redis.call('EXPIRE', KEYS[1], 3600)
  for i = 3, 4 do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], 3600) end
  end
  return {'more'}
end
for i = 3, 4 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i + 2])
    if ARGV[6] ~= '' then
      redis.call('EXPIREAT', KEYS[i + 2], ARGV[6])
    else
      redis.call('PERSIST', KEYS[i + 2])
    end
  else
    redis.call('DEL', KEYS[i + 2])
  end
end
redis.call('DEL', KEYS[1])
return {'done', redis.call('ZCARD', KEYS[5]) + redis.call('ZCARD', KEYS[6])}
"#,
};

/// `append`: one atomic batch. Dedupe by id (`ids` hash: uuid → `<stream id>|<version>`),
/// then expected versions, then per new event: `HINCRBY` the stream version,
/// `XADD *` to the global stream, index entries (same stream id) in the
/// per-stream and per-session index streams.
/// KEYS: log stream, ids hash, versions hash.
/// ARGV: index prefix, n, m, m × (stream, 'n'|'x', version), n × (uuid, stream|'', session|'', occurred ms, JSON).
/// Returns {'dup', recs} | {'conflict', stream, actual} | {'ok', recs}, where
/// a rec of 'ok' starts with 'd' (duplicate) or 'n' (new).
pub static EVENTS_APPEND: Lua = Lua {
    name: "events_append",
    source: r#"
local p = ARGV[1]
local n = tonumber(ARGV[2])
local m = tonumber(ARGV[3])
local base = 4 + 3 * m
local known = {}
local all = true
for i = 0, n - 1 do
  local k = redis.call('HGET', KEYS[2], ARGV[base + 5 * i])
  known[i + 1] = k
  if not k then all = false end
end
if all then return {'dup', known} end
for j = 0, m - 1 do
  local s = ARGV[4 + 3 * j]
  local mode = ARGV[5 + 3 * j]
  local actual = redis.call('HGET', KEYS[3], s) or '0'
  if (mode == 'n' and actual ~= '0') or (mode == 'x' and actual ~= ARGV[6 + 3 * j]) then
    return {'conflict', s, actual}
  end
end
local out = {}
for i = 0, n - 1 do
  local o = base + 5 * i
  if known[i + 1] then
    out[i + 1] = 'd' .. known[i + 1]
  else
    local stream = ARGV[o + 1]
    local session = ARGV[o + 2]
    local fields = {'i', ARGV[o], 't', ARGV[o + 3], 'j', ARGV[o + 4]}
    local v = ''
    if stream ~= '' then
      v = tostring(redis.call('HINCRBY', KEYS[3], stream, 1))
      table.insert(fields, 'v'); table.insert(fields, v)
      table.insert(fields, 's'); table.insert(fields, stream)
    end
    if session ~= '' then
      table.insert(fields, 'x'); table.insert(fields, session)
    end
    local sid = redis.call('XADD', KEYS[1], '*', unpack(fields))
    if stream ~= '' then redis.call('XADD', p .. 's:' .. stream, sid, 'p', '') end
    if session ~= '' then redis.call('XADD', p .. 'x:' .. session, sid, 'p', '') end
    local rec = sid .. '|' .. v
    redis.call('HSET', KEYS[2], ARGV[o], rec)
    out[i + 1] = 'n' .. rec
  end
end
return {'ok', out}
"#,
};

/// One step of a scan over the global stream, or over an index stream whose
/// entries point (by equal stream id) into it.
/// KEYS: log, source (log or index). ARGV: 'asc'|'desc', start bound, count.
/// Returns {last id scanned or '', entries scanned, {id, version|'', JSON, …}}.
pub static EVENTS_SCAN: Lua = Lua {
    name: "events_scan",
    source: r#"
local entries
if ARGV[1] == 'asc' then
  entries = redis.call('XRANGE', KEYS[2], ARGV[2], '+', 'COUNT', tonumber(ARGV[3]))
else
  entries = redis.call('XREVRANGE', KEYS[2], ARGV[2], '-', 'COUNT', tonumber(ARGV[3]))
end
local last = ''
local out = {}
for _, e in ipairs(entries) do
  last = e[1]
  local fields = nil
  if KEYS[2] == KEYS[1] then
    fields = e[2]
  else
    local r = redis.call('XRANGE', KEYS[1], e[1], e[1])
    if r[1] then fields = r[1][2] end
  end
  if fields then
    local j, v = '', ''
    for k = 1, #fields, 2 do
      if fields[k] == 'j' then j = fields[k + 1] elseif fields[k] == 'v' then v = fields[k + 1] end
    end
    table.insert(out, e[1]); table.insert(out, v); table.insert(out, j)
  end
end
return {last, #entries, out}
"#,
};

/// One step of `purge`: deletes, among the next `count` entries of the log,
/// those with occurred_at < before, with their id and index entries.
/// KEYS: log, ids hash. ARGV: index prefix, start bound, before ms, count.
/// Returns {last id scanned or '', entries scanned, deleted}.
pub static EVENTS_PURGE: Lua = Lua {
    name: "events_purge",
    source: r#"
local entries = redis.call('XRANGE', KEYS[1], ARGV[2], '+', 'COUNT', tonumber(ARGV[4]))
local before = tonumber(ARGV[3])
local gone = 0
local last = ''
for _, e in ipairs(entries) do
  last = e[1]
  local f = e[2]
  local t, id, s, x = nil, nil, nil, nil
  for k = 1, #f, 2 do
    local name = f[k]
    if name == 't' then t = f[k + 1] elseif name == 'i' then id = f[k + 1]
    elseif name == 's' then s = f[k + 1] elseif name == 'x' then x = f[k + 1] end
  end
  if t and tonumber(t) < before then
    redis.call('XDEL', KEYS[1], e[1])
    if id then redis.call('HDEL', KEYS[2], id) end
    if s then redis.call('XDEL', ARGV[1] .. 's:' .. s, e[1]) end
    if x then redis.call('XDEL', ARGV[1] .. 'x:' .. x, e[1]) end
    gone = gone + 1
  end
end
return {last, #entries, gone}
"#,
};

/// One step of dropping a namespace: `SCAN` with a pattern on the node that
/// owns `KEYS[1]`'s slot, `UNLINK` what matched. ARGV: cursor, pattern.
/// Returns the next cursor ('0' when done).
pub static DROP_STEP: Lua = Lua {
    name: "drop_step",
    source: r#"
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 1000)
for _, k in ipairs(r[2]) do redis.call('UNLINK', k) end
return r[1]
"#,
};

/// Durable consumers: takes or renews a lease. KEYS: filters hash,
/// checkpoints hash, the consumer's lease key. ARGV: name, filter key, token,
/// lease ms, '1' to renew only (the token's own lease; never creates).
/// Returns `{'ok', checkpoint or ''}`, `{'held'}`, `{'filter'}` or
/// `{'lost'}`. The lease key expires on the server's clock (`SET PX`).
pub static CONSUMER_CLAIM: Lua = Lua {
    name: "consumer_claim",
    source: r#"
local f = redis.call('HGET', KEYS[1], ARGV[1])
local h = redis.call('GET', KEYS[3])
if ARGV[5] == '1' and (not f or h ~= ARGV[3]) then return {'lost'} end
if f and f ~= ARGV[2] then return {'filter'} end
if h and h ~= ARGV[3] then return {'held'} end
if not f then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return {'ok', redis.call('HGET', KEYS[2], ARGV[1]) or ''}
"#,
};

/// Durable consumers: moves a checkpoint forward under the lease's token.
/// KEYS: checkpoints hash, lease key. ARGV: name, token, major, minor (both
/// below 2^53, checked by the caller). Returns 1, or 0 when the token does
/// not hold the lease (expired, taken over, released or deleted).
pub static CONSUMER_ACK: Lua = Lua {
    name: "consumer_ack",
    source: r#"
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local a, b = string.match(cur, '^(%d+)-(%d+)$')
  a = tonumber(a)
  b = tonumber(b)
  local na, nb = tonumber(ARGV[3]), tonumber(ARGV[4])
  if a and b and (na < a or (na == a and nb <= b)) then return 1 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. '-' .. ARGV[4])
return 1
"#,
};

/// Durable consumers: gives a lease up if the token holds it. KEYS: lease
/// key. ARGV: token.
pub static CONSUMER_RELEASE: Lua = Lua {
    name: "consumer_release",
    source: r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#,
};

/// Durable consumers: the consumers named in ARGV that exist, as a flat list
/// of `name, filter key, checkpoint or '', lease PTTL` (negative: not held).
/// KEYS: filters hash, checkpoints hash, then each name's lease key (every
/// key declared, all under one hash tag). Names deleted since they were read
/// are left out.
pub static CONSUMER_LIST: Lua = Lua {
    name: "consumer_list",
    source: r#"
local out = {}
for i, name in ipairs(ARGV) do
  local filter = redis.call('HGET', KEYS[1], name)
  if filter then
    out[#out + 1] = name
    out[#out + 1] = filter
    out[#out + 1] = redis.call('HGET', KEYS[2], name) or ''
    out[#out + 1] = redis.call('PTTL', KEYS[i + 2])
  end
end
return out
"#,
};

/// Durable consumers: deletes one. KEYS: filters hash, checkpoints hash,
/// lease key. ARGV: name. Returns whether it existed.
pub static CONSUMER_DELETE: Lua = Lua {
    name: "consumer_delete",
    source: r#"
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return n
"#,
};

/// Every script, for clients that register them up front.
pub static ALL: [&Lua; 19] = [
    &SESSION_PUSH,
    &SESSION_INCR,
    &SESSION_HIT,
    &REPUTATION_RECORD,
    &REPUTATION_HISTORY,
    &REPUTATION_PAGE,
    &REPUTATION_AROUND,
    &REPUTATION_RANK,
    &REPUTATION_REBUILD_BEGIN,
    &REPUTATION_REBUILD_STEP,
    &EVENTS_APPEND,
    &EVENTS_SCAN,
    &EVENTS_PURGE,
    &DROP_STEP,
    &CONSUMER_CLAIM,
    &CONSUMER_ACK,
    &CONSUMER_RELEASE,
    &CONSUMER_LIST,
    &CONSUMER_DELETE,
];
