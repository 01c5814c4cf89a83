-- wrk script: POST a small JSON event to the invoke endpoint.
wrk.method = "POST"
wrk.body = '{"name": "bench"}'
wrk.headers["Content-Type"] = "application/json"
