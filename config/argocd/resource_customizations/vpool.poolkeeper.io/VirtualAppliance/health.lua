-- Argo CD health of a poolkeeper VirtualAppliance, from its kstatus conditions
-- (Ready, Reconciling, Stalled). Generated for every kind from the same
-- rules; see the README, "Day 2".
local hs = {}
local function condition(t)
  if obj.status == nil or obj.status.conditions == nil then return nil end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then return c end
  end
  return nil
end
local function says(c, fallback)
  if c == nil then return fallback end
  local m = c.reason or ""
  if c.message ~= nil and c.message ~= "" then m = m .. ": " .. c.message end
  return m
end
local stalled, reconciling, ready = condition("Stalled"), condition("Reconciling"), condition("Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = says(stalled, "Stalled")
  return hs
end
if obj.status == nil or ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the poolkeeper operator"
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = says(reconciling, "Reconciling")
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = says(ready, "Ready")
  return hs
end
hs.status = "Degraded"
hs.message = says(ready, "not Ready")
return hs
