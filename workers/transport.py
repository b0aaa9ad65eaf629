"""kombu's Redis transport, except that a malformed message does not kill the worker.

kombu pops a message off the queue list and parses it as JSON inside its event loop
(``Channel._brpop_read``); anything else pushed onto the list (a stray ``LPUSH soakq hello``, a
truncated write) raises there and Celery stops the worker ("Unrecoverable error"). This channel
parses the envelope first: one that is not JSON, or not a kombu envelope, is logged and set
aside on a capped list (``dead_letter_key``, default ``soakq:dead-letters``) and the worker
carries on. A well-formed envelope whose body Celery cannot use is Celery's business (it logs
and rejects it).

Selected with ``broker_transport = "workers.transport:Transport"`` (workers.celeryconfig).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

log = logging.getLogger(__name__)

DEAD_LETTERS_KEEP = 1000  # the newest set-aside messages kept for a look


def envelope(raw: Any) -> dict[str, Any] | None:
    """The kombu envelope in ``raw``, or None when it is not one."""
    try:
        doc = json.loads(bytes_to_str(raw))
    except (TypeError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    props = doc.get("properties")
    if (
        not isinstance(props, dict)
        or "body" not in doc
        or "delivery_tag" not in props
        or not isinstance(props.get("delivery_info"), dict)
    ):
        return None
    return doc


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    dead_letter_key = "soakq:dead-letters"
    from_transport_options = (  # type: ignore[assignment]
        *kombu_redis.Channel.from_transport_options,
        "dead_letter_key",
    )

    def _set_aside(self, raw: Any, queue: str) -> None:
        text = bytes_to_str(raw) if isinstance(raw, bytes | str) else repr(raw)
        log.error(
            "malformed message on queue %r set aside on %r (not a kombu JSON envelope): %.200r",
            queue,
            self.dead_letter_key,
            text,
        )
        try:
            with self.conn_or_acquire() as client:
                pipe = client.pipeline()
                pipe.lpush(self.dead_letter_key, raw)
                pipe.ltrim(self.dead_letter_key, 0, DEAD_LETTERS_KEEP - 1)
                pipe.execute()
        except Exception as exc:  # the log line above is the record that matters
            log.warning("could not keep the malformed message: %s", exc)

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            message = envelope(item)
            if message is None:
                self._set_aside(item, dest)
                return True
            self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, pri))
                if item:
                    self._maybe_update_queues_expire(client, queue)
                    message = envelope(item)
                    if message is None:
                        self._set_aside(item, queue)
                        continue
                    return message
            self._maybe_update_queues_expire(client, queue)
            raise kombu_redis.Empty()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
