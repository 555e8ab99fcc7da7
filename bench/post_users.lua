-- POST /users with a unique email per request (thread id + counter).
local counter = 0
local tid = 0
function setup(thread)
  tid = tid + 1
  thread:set("tid", tid)
end
function request()
  counter = counter + 1
  local body = string.format('{"email":"bench-%d-%d-%d@example.com","name":"Bench"}',
                             tid, counter, math.random(1, 1000000000))
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
