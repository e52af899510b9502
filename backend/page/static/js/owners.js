// Owner tokens of the runs made in this browser (localStorage): a run's creating answer carries
// its owner_token once; re-running or deleting that request_id needs it as X-Run-Owner.
const KEY = "playground.runOwners";
const MAX_KEPT = 500;

function load() {
  try {
    const stored = JSON.parse(localStorage.getItem(KEY) || "{}");
    return stored && typeof stored === "object" ? stored : {};
  } catch {
    return {};
  }
}

function save(owners) {
  // Keep the newest MAX_KEPT (insertion order), so storage stays bounded.
  const entries = Object.entries(owners).slice(-MAX_KEPT);
  try {
    localStorage.setItem(KEY, JSON.stringify(Object.fromEntries(entries)));
  } catch {
    // Storage full or disabled: the run still works, it just cannot be deleted from here.
  }
}

export function rememberOwner(requestId, token) {
  if (!requestId || !token) return;
  const owners = load();
  delete owners[requestId];
  owners[requestId] = token;
  save(owners);
}

export function ownerToken(requestId) {
  return load()[requestId] || null;
}

export function forgetOwner(requestId) {
  const owners = load();
  delete owners[requestId];
  save(owners);
}
