-- wrk script for requests with a body: the method and the JSON body come from
-- the environment (bench/http/run.py sets WRK_METHOD and WRK_BODY_FILE).
local file = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.body = file:read("*a")
file:close()
wrk.method = os.getenv("WRK_METHOD") or "POST"
wrk.headers["Content-Type"] = "application/json"
