"""Who may take the next slot under the deployment's ceiling: a fair share per client.

``decide`` answers from three counts taken under the class's lock (backend/db/limits.py): the
slots this client holds, the slots everyone holds, and how many clients hold any. The rules, in
order:

1. ``client``: the client is at its fixed per-client limit.
2. ``global``: the ceiling is reached.
3. ``share``: the client holds its fair share already, the ceiling divided among the clients
   holding slots (the asker counted): 16 slots, 8 clients holding: 2 each; a 9th arriving: 1.
4. ``share``: the client holds a slot and taking another would leave fewer than ``reserve``
   free: the last slots are kept for clients that hold none, so a newcomer is admitted while
   others are busy (with the first rule, a handful of addresses never fill the ceiling).

A client holding nothing is refused only by the ceiling itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from backend.db.limits import SlotCounts

Refusal = Literal["client", "global", "share"]


@dataclass(frozen=True, slots=True)
class FairShare:
    per_client: int
    ceiling: int | None
    reserve: int = 0

    def decide(self, counts: SlotCounts) -> Refusal | None:
        if counts.mine >= self.per_client:
            return "client"
        if self.ceiling is None:
            return None
        if counts.everyone >= self.ceiling:
            return "global"
        if counts.mine == 0:
            return None
        clients = max(counts.clients, 1)
        share = max(1, self.ceiling // clients)
        if counts.mine >= share:
            return "share"
        if self.ceiling - counts.everyone - 1 < self.reserve:
            return "share"
        return None
