"""Live events for remote managers: what changed in a hotel, as it is applied.

    live = LiveEvents.from_config(config)      # in-process, or Redis for several nodes
    await live.start()
    await live.publish(hotel_id, [LiveEvent("state", {...}, room_id="101")])
    sub = await live.subscribe(org_id, hotel_id)    # then sub.next(timeout), live.unsubscribe(sub)
    await live.resume(org_id, after)                # what the log holds after an id, and any gap
    await live.close()

Modules: `events` (an event, its id and body, the events of an applied batch),
`log` (the in-process log and watchers' bounded queues, sans-I/O), `redis_log`
(one Redis Stream per organisation, for several nodes), `service`
(`LiveEvents`), `checks` (the streams' session and access re-checks, one per session
and scope), `stream` (one watcher's Server-Sent Events). The routes are
api/routes_events.py; the format is docs/live-events.md.
"""

from __future__ import annotations

from bellhop_cloud.live.events import Entry, LiveEvent, plan_events
from bellhop_cloud.live.log import EventLog, Resume, Subscription
from bellhop_cloud.live.service import LiveEvents

__all__ = ["Entry", "EventLog", "LiveEvent", "LiveEvents", "Resume", "Subscription", "plan_events"]
