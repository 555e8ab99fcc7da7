-- POST /users with a unique email per request: thread id (set by setup as a
-- global of the thread's Lua state) + a per-thread counter.
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function request()
  counter = counter + 1
  local body = string.format('{"email":"bench-%d-%d-%d@example.com","name":"Bench"}',
                             tid, counter, os.time())
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
