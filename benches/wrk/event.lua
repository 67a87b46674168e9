-- wrk script: POST /events/bench.event with a 298-byte permit event, n = 0..99,999 (the
-- connector's record key), so keys rarely repeat within a run.
counter = 0
request = function()
  counter = counter + 1
  local n = counter % 100000
  local body = string.format('{"n": %d, "permit_id": "P-%08d", "status": "approved", "applicant": {"name": "Jane Ranger", "email": "jane.ranger@example.gov"}, "location": {"lat": 44.4280, "lon": -110.5885, "parcel": "YNP-0042-17"}, "fee_cents": 12500, "updated_at": "2026-11-30T12:00:00Z", "notes": "routine renewal"}', n, n)
  return wrk.format("POST", "/events/bench.event", {["Content-Type"] = "application/json"}, body)
end
