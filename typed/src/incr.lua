-- incr on a Redis map, on the server in one step: the same arithmetic as number.rs's `Num` on
-- the same value encoding (tag byte + payload), bit for bit. Lua 5.1's numbers are doubles:
-- ints within +-2^53 (every counter in practice) are added as doubles, which is exact there;
-- any other int goes through exact decimal bignums (base-10^7 limbs: every intermediate stays
-- below 2^53). The bignum path costs ~10x the fast one, and the server runs one script at a
-- time, so the fast path is what a shared counter's throughput is. The map's prelude (cap,
-- room) comes first.
-- ARGV: key, delta encoding, default encoding; from a typed Rust map of ints also 'i' (a
-- float result is refused), and the least and greatest int its type holds, in decimal.
-- Returns {0, new encoding} | {1, type name} (TypeError) | {2} (beyond 128 bits)
-- | {3, sum in decimal} (outside the Rust type). A refusal changes nothing.
local B = 10000000
local INT, BIG_INT, BOOL, FLOAT = 3, 4, 5, 6
local NAMES = {[0] = 'NoneType', [1] = 'str', [2] = 'bytes', [7] = 'a pickled object',
               [8] = 'tuple', [9] = 'frozenset'}

local function trim(m)
  while #m > 1 and m[#m] == 0 do m[#m] = nil end
  return m
end
-- m = m * f + a, for small f and a (limbs times 256 stay far below 2^53).
local function mul_add(m, f, a)
  local carry = a
  for i = 1, #m do
    local x = m[i] * f + carry
    m[i] = x % B
    carry = math.floor(x / B)
  end
  while carry > 0 do
    m[#m + 1] = carry % B
    carry = math.floor(carry / B)
  end
  return m
end
local function divmod(m, d)
  local q, r = {}, 0
  for i = #m, 1, -1 do
    local x = r * B + m[i]
    q[i] = math.floor(x / d)
    r = x % d
  end
  return trim(q), r
end
local function cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = #a, 1, -1 do
    if a[i] ~= b[i] then return a[i] < b[i] and -1 or 1 end
  end
  return 0
end
local function add_mag(a, b)
  local r, c = {}, 0
  for i = 1, math.max(#a, #b) do
    local x = (a[i] or 0) + (b[i] or 0) + c
    r[i] = x % B
    c = math.floor(x / B)
  end
  if c > 0 then r[#r + 1] = c end
  return r
end
local function sub_mag(a, b) -- a >= b
  local r, c = {}, 0
  for i = 1, #a do
    local x = a[i] - (b[i] or 0) - c
    if x < 0 then x = x + B; c = 1 else c = 0 end
    r[i] = x
  end
  return trim(r)
end
local function add(x, y)
  if x.neg == y.neg then return {neg = x.neg, mag = add_mag(x.mag, y.mag)} end
  local c = cmp(x.mag, y.mag)
  if c == 0 then return {neg = false, mag = {0}} end
  if c > 0 then return {neg = x.neg, mag = sub_mag(x.mag, y.mag)} end
  return {neg = y.neg, mag = sub_mag(y.mag, x.mag)}
end
-- Two's complement of 8 little-endian bytes, in place.
local function negate(b)
  local carry = 1
  for i = 1, 8 do
    local x = (255 - b[i]) + carry
    b[i] = x % 256
    carry = math.floor(x / 256)
  end
end
local function from_le(s)
  local b = {string.byte(s, 1, 8)}
  local neg = b[8] >= 128
  if neg then negate(b) end
  local m = {0}
  for i = 8, 1, -1 do mul_add(m, 256, b[i]) end
  return {neg = neg, mag = trim(m)}
end
local function to_le(x)
  local b, m = {}, x.mag
  for i = 1, 8 do m, b[i] = divmod(m, 256) end
  if x.neg then negate(b) end
  return string.char(unpack(b))
end
-- As Rust's str::parse::<i128> before its range check: an optional sign, then digits.
local function from_dec(s)
  local neg, digits = false, s
  local sign = s:sub(1, 1)
  if sign == '-' or sign == '+' then neg = sign == '-'; digits = s:sub(2) end
  if #digits == 0 or digits:find('[^0-9]') then return nil end
  local m = {0}
  for i = 1, #digits do mul_add(m, 10, digits:byte(i) - 48) end
  m = trim(m)
  return {neg = neg and not (#m == 1 and m[1] == 0), mag = m}
end
local function to_dec(x)
  local parts = {x.neg and '-' or ''}
  for i = #x.mag, 1, -1 do
    parts[#parts + 1] = (i == #x.mag) and string.format('%d', x.mag[i])
                        or string.format('%07d', x.mag[i])
  end
  return table.concat(parts)
end
-- {max, |min|} as limbs (little-endian, base 10^7), written out: computing them from their
-- decimal strings on every call cost more than the rest of a fast-path incr.
local I64 = {{4775807, 7203685, 92233}, {4775808, 7203685, 92233}}
local I128 = {{4105727, 371588, 7316873, 469231, 4118346, 1701},
              {4105728, 371588, 7316873, 469231, 4118346, 1701}}
local function fits(x, limits) return cmp(x.mag, x.neg and limits[2] or limits[1]) <= 0 end
-- Signed comparison of two bignums: -1, 0 or 1.
local function scmp(a, b)
  if a.neg ~= b.neg then return a.neg and -1 or 1 end
  local c = cmp(a.mag, b.mag)
  if a.neg then return -c end
  return c
end

-- A stored or given encoding as {int = bignum} / {float = number}; or nil, err.
local function num(enc)
  local tag, p = enc:byte(1), enc:sub(2)
  if tag == INT then
    if #p ~= 8 then return nil, {1, 'corrupt int'} end
    return {int = from_le(p)}
  elseif tag == BIG_INT then
    local x = from_dec(p)
    if not x or not fits(x, I128) then return nil, {2} end
    return {int = x}
  elseif tag == BOOL then
    return {int = {neg = false, mag = {p:byte(1) == 1 and 1 or 0}}}
  elseif tag == FLOAT then
    if #p ~= 8 then return nil, {1, 'corrupt float'} end
    return {float = struct.unpack('<d', p)}
  end
  return nil, {1, (tag and NAMES[tag]) or 'corrupt value'}
end
local function as_float(n)
  if n.float then return n.float end
  return tonumber(to_dec(n.int)) -- strtod rounds to nearest, as Rust's `i128 as f64`
end

-- An int (or bool) encoding within +-2^53 as an exact double; nil otherwise. The bounds are
-- read off the top two bytes before unpacking, so nothing is rounded.
local function small_int(enc)
  local tag = enc:byte(1)
  if tag == BOOL then return enc:byte(2) == 1 and 1 or 0 end
  if tag ~= INT or #enc ~= 9 then return nil end
  local top, next = enc:byte(9), enc:byte(8)
  if (top == 0 and next < 32) or (top == 255 and next >= 224) then
    return (struct.unpack('<i8', enc, 2))
  end
  return nil
end
local TWO53 = 9007199254740992

local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur and not room(1) then return redis.error_reply('SHMAP_FULL') end
local a, d = small_int(cur or ARGV[3]), small_int(ARGV[2])
local lo, hi = ARGV[5], ARGV[6] -- a Rust type's range, or nil
if a and d then
  local sum = a + d
  if sum > -TWO53 and sum < TWO53 then
    -- Bounds beyond 2^53 round as doubles, but a sum this small is far from them.
    if lo and (sum < tonumber(lo) or sum > tonumber(hi)) then
      return {3, string.format('%.0f', sum)}
    end
    local out = string.char(INT) .. struct.pack('<i8', sum)
    redis.call('HSET', KEYS[2], ARGV[1], out)
    return {0, out}
  end
end
local base, err = num(cur or ARGV[3])
if not base then return err end
local delta, derr = num(ARGV[2])
if not delta then return derr end
if ARGV[4] == 'i' and not (base.int and delta.int) then return {1, 'float'} end
local out
if base.int and delta.int then
  local sum = add(base.int, delta.int)
  if not fits(sum, I128) then return {2} end
  if lo and (scmp(sum, from_dec(lo)) < 0 or scmp(sum, from_dec(hi)) > 0) then
    return {3, to_dec(sum)}
  end
  if fits(sum, I64) then out = string.char(INT) .. to_le(sum)
  else out = string.char(BIG_INT) .. to_dec(sum) end
else
  out = string.char(FLOAT) .. struct.pack('<d', as_float(base) + as_float(delta))
end
redis.call('HSET', KEYS[2], ARGV[1], out)
return {0, out}
