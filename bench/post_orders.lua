-- POST /orders for one user (BENCH_USER_ID): user check + payment + events.
local uid = os.getenv("BENCH_USER_ID")
local body = string.format(
  '{"userId":"%s","items":[{"productId":"p1","quantity":2,"price":1999}],"paymentMethod":"tok_visa"}',
  uid)
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
