"""containerd.services.events.v1.Events: the store's event journal
(``hawser.events``) as containerd's event stream, so ``ctr events`` and
other containerd clients see what hawser does, whoever does it: a
containerd API call, a CRI call, a ``hawser`` command with hawserd up or down.

Subscribe sends an Envelope (timestamp, namespace, topic, event) for every
journal event that has a containerd topic, of every namespace (as
containerd's: the request's namespace does not narrow it), filtered by
containerd's filter syntax over the envelope (``namespace``, ``topic``,
``event.<field>``: the event message's string fields, ``labels.<key>`` and
nested messages, by their proto names, as containerd's fieldpath
adaptors).  One deviation, on purpose: the first subscriber after hawserd
starts first gets what was journaled while hawserd was down (at most
QUEUE_SIZE events; ``hawser.events.Broadcast``), so that nothing the CLI
did meanwhile is missed; later subscribers get events from now on, as
containerd's.  A subscriber that falls QUEUE_SIZE events behind is dropped
(RESOURCE_EXHAUSTED).

Publish (the request's namespace, required; a topic of ``/``-separated
identifiers) and Forward (an envelope as is: namespace, topic and timestamp
checked as containerd checks them) append to the journal; every subscriber
gets the event from there, and a first subscriber after a restart gets it
if it came while hawserd was down.

``Envelope.event`` is an Any whose type URL is the message's proto full
name, as containerd's typeurl names its event types (no host prefix):
``containerd.events.TaskExit``, but ``containerd.services.images.v1.ImageCreate``
(containerd's image events are declared in its images service's package);
ctr decodes it by that name.

The journal's events and their topics (``envelopes``):

    container create      /containers/create, /tasks/create
    container start       /tasks/start
    container exit        /tasks/oom (an OOM kill), /tasks/exit
    container exec-start  /tasks/exec-added, /tasks/exec-started
    container exec-exit   /tasks/exit (id: the exec's)
    container remove      /tasks/delete, /containers/delete
    image pull|import|create   /images/create
    image update          /images/update
    image remove          /images/delete
    namespace create|update|remove   /namespace/create|update|delete
    snapshot prepare|commit|remove   /snapshot/prepare|commit|remove
    content delete        /content/delete
    gc run                /content/delete per blob record, /snapshot/remove per snapshot
    containerd <topic>    the topic and event as journaled (``journal_topic``, Publish, Forward)

Pods, and anything else, have no containerd topic.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from google.protobuf import any_pb2, empty_pb2
from google.protobuf.message import DecodeError, Message

from hawser._logging import get_logger
from hawser.containerd._api.events import container_pb2, content_pb2, image_pb2, namespace_pb2, snapshot_pb2, task_pb2
from hawser.containerd._api.services.events.v1 import events_pb2 as pb
from hawser.containerd._api.services.events.v1 import events_pb2_grpc
from hawser.containerd._convert import timestamp
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import NAMESPACE_HEADER, Context, namespace_of, serve
from hawser.containerd._filters import Adaptor, parse_filters
from hawser.errors import InvalidArgument, Unimplemented
from hawser.events import Broadcast, Event, Follower, Journal, gc_removals
from hawser.metadata import check_identifier

if TYPE_CHECKING:
    from hawser.events import Blocking

log = get_logger(__name__)

Envelope = pb.Envelope

# The journal event type of events journaled with their containerd topic and message.
JOURNAL_TYPE = "containerd"
# The name of the Events service's place in the journal (state/events/containerd.cursor).
CURSOR = "containerd"
# The runtime containerd's clients know runc by (hawser runs runc under conmon).
RUNTIME = "io.containerd.runc.v2"
# containerd's exit status when the real one is not known (containerd.UnknownExitStatus).
UNKNOWN_EXIT_STATUS = 255
# Labels ride in journal attributes under this prefix.
LABEL_PREFIX = "label."

# Every event message containerd defines, by proto full name (its type URL).
MESSAGES: dict[str, type[Message]] = {
    message.DESCRIPTOR.full_name: message
    for module in (container_pb2, content_pb2, image_pb2, namespace_pb2, snapshot_pb2, task_pb2)
    for message in vars(module).values()
    if isinstance(message, type) and issubclass(message, Message) and message.DESCRIPTOR.file is module.DESCRIPTOR
}


def type_url(message: Message) -> str:
    """The type URL containerd gives an event (typeurl: the proto full name, no prefix)."""
    return str(message.DESCRIPTOR.full_name)


def pack(message: Message) -> any_pb2.Any:
    """``message`` as an Envelope's event (not ``Any.Pack``: containerd's URLs have no host)."""
    if isinstance(message, any_pb2.Any):
        return message
    return any_pb2.Any(type_url=type_url(message), value=message.SerializeToString())


def unpack(event: any_pb2.Any) -> Message | None:
    """An envelope's event as its message, or None for a type hawser does not know (or bytes that do not parse)."""
    kind = MESSAGES.get(event.type_url.rpartition("/")[2])
    if kind is None:
        return None
    message = kind()
    try:
        message.ParseFromString(event.value)
    except DecodeError:
        return None
    return message


# The largest event a client may publish or forward: events are small (ids, names,
# statuses), and one the size of the journal's bound would push its history out.
MAX_EVENT_BYTES = 64 << 10


def check_event_size(topic: str, event: any_pb2.Any) -> None:
    size = len(event.value) + len(event.type_url)
    if size > MAX_EVENT_BYTES:
        raise InvalidArgument(f"the event on {topic} is {size} bytes: at most {MAX_EVENT_BYTES} are taken")


def validate_topic(topic: str) -> str:
    """A topic as containerd's exchange takes one: ``/`` then identifiers
    separated by ``/``. InvalidArgument otherwise."""
    if not topic:
        raise InvalidArgument("envelope topic must not be empty")
    if not topic.startswith("/"):
        raise InvalidArgument(f"envelope topic {topic!r} must start with '/'", hint="e.g. /tasks/exit")
    if len(topic) == 1:
        raise InvalidArgument(f"envelope topic {topic!r} must have at least one component")
    for component in topic[1:].split("/"):
        try:
            check_identifier(component, "topic component")
        except InvalidArgument as exc:
            raise InvalidArgument(f"envelope topic {topic!r}: failed validation on component {component!r}",
                                  hint=exc.hint) from None
    return topic


# --- into the journal -------------------------------------------------------------------------


def labels_attributes(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels as journal attributes (``label.<key>``)."""
    return {LABEL_PREFIX + key: value for key, value in labels.items() if value}


def labels_of(event: Event) -> dict[str, str]:
    return {key[len(LABEL_PREFIX):]: value for key, value in event.attributes.items() if key.startswith(LABEL_PREFIX)}


def journal_topic(journal: Journal | None, namespace: str, topic: str, event: Message, *,
                  timestamp_ns: int | None = None) -> None:
    """Journal ``event`` (a ``containerd.events`` message, or an Any) under
    containerd's ``topic`` in ``namespace``: every Events subscriber gets
    it as an envelope, and so does the first one after a restart if hawserd
    was down.  For what has no journal event of its own (tasks paused,
    resumed, containers updated, ...); what the container manager's
    observer journals already (create, start, exit, exec, remove of its
    containers) must not be journaled again.  ``timestamp_ns``: the
    envelope's time (a Forward's), else the journal event's (now).  Blocking (a small append; never raises: a
    journal that cannot be written loses the event).  No-op without a journal."""
    if journal is None:
        return
    any_event = pack(event)
    attributes = {"topic": topic, "typeUrl": any_event.type_url,
                  "event": base64.b64encode(any_event.value).decode("ascii")}
    if timestamp_ns is not None:
        attributes["timestamp"] = str(timestamp_ns)
    id_ = ""
    if not isinstance(event, any_pb2.Any):
        id_ = str(getattr(event, "container_id", "") or getattr(event, "id", "") or getattr(event, "name", "")
                  or getattr(event, "key", "") or getattr(event, "digest", ""))
    journal.append(Event(time=time.time(), type=JOURNAL_TYPE, action=topic, id=id_, namespace=namespace,
                         attributes=attributes))


async def record(deps: ContainerdDeps, type_: str, action: str, *, namespace: str, id_: str = "", name: str = "",
                 labels: Mapping[str, str] | None = None, **attributes: str) -> None:
    """Journal a change a containerd service made (a namespace, image,
    snapshot or content change: ``hawser events`` shows it, Subscribe sends
    its topic), off the event loop. No-op without a journal."""
    if deps.journal is not None:
        await deps.blocking(record_now, deps, type_, action, namespace=namespace, id_=id_, name=name,
                            labels=labels, **attributes)


def record_now(deps: ContainerdDeps, type_: str, action: str, *, namespace: str, id_: str = "", name: str = "",
               labels: Mapping[str, str] | None = None, **attributes: str) -> None:
    """``record``, blocking: for a handler whose work is in a worker thread already."""
    if deps.journal is not None:
        deps.journal.record(type_, action, id_=id_, name=name, namespace=namespace,
                            **labels_attributes(labels or {}), **attributes)


def request_namespace(context: Context, default: str = "") -> str:
    """The request's namespace header, or ``default`` (no error: for events only)."""
    for key, value in context.invocation_metadata() or ():
        if key == NAMESPACE_HEADER and isinstance(value, str) and value:
            return value
    return default


# --- out of the journal -----------------------------------------------------------------------


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(text or "")
    except ValueError:
        return default


def _exit_status(text: str | None) -> int:
    code = _int(text, UNKNOWN_EXIT_STATUS)
    return code if 0 <= code <= 0xFFFFFFFF else UNKNOWN_EXIT_STATUS


def _container(event: Event) -> list[tuple[str, Message]]:
    a, cid = event.attributes, event.id
    pid = _int(a.get("pid"))
    match event.action:
        case "create":
            runtime = container_pb2.ContainerCreate.Runtime(name=a.get("runtime") or RUNTIME)
            return [("/containers/create", container_pb2.ContainerCreate(id=cid, image=a.get("image", ""),
                                                                         runtime=runtime)),
                    ("/tasks/create", task_pb2.TaskCreate(container_id=cid, pid=pid))]
        case "start":
            return [("/tasks/start", task_pb2.TaskStart(container_id=cid, pid=pid))]
        case "exit":
            exited = task_pb2.TaskExit(container_id=cid, id=cid, pid=pid, exit_status=_exit_status(a.get("exitCode")),
                                       exited_at=timestamp(event.time))
            oom = [("/tasks/oom", task_pb2.TaskOOM(container_id=cid))] if a.get("reason") == "OOMKilled" else []
            return [*oom, ("/tasks/exit", exited)]
        case "exec-start":
            exec_id = a.get("execID", "")
            return [("/tasks/exec-added", task_pb2.TaskExecAdded(container_id=cid, exec_id=exec_id)),
                    ("/tasks/exec-started", task_pb2.TaskExecStarted(container_id=cid, exec_id=exec_id, pid=pid))]
        case "exec-exit":
            return [("/tasks/exit", task_pb2.TaskExit(container_id=cid, id=a.get("execID", ""), pid=pid,
                                                      exit_status=_exit_status(a.get("exitCode")),
                                                      exited_at=timestamp(event.time)))]
        case "remove":
            # Every container hawser's manager makes has a task (conmon and runc's container) until removed.
            return [("/tasks/delete", task_pb2.TaskDelete(container_id=cid, pid=pid,
                                                          exit_status=_exit_status(a.get("exitCode") or "0"),
                                                          exited_at=timestamp(event.time))),
                    ("/containers/delete", container_pb2.ContainerDelete(id=cid))]
    return []


def _image(event: Event) -> list[tuple[str, Message]]:
    name = event.name or event.id
    if not name:
        return []
    if event.action in ("pull", "import", "create"):
        return [("/images/create", image_pb2.ImageCreate(name=name, labels=labels_of(event)))]
    if event.action == "update":
        return [("/images/update", image_pb2.ImageUpdate(name=name, labels=labels_of(event)))]
    if event.action == "remove":
        return [("/images/delete", image_pb2.ImageDelete(name=name))]
    return []


def _namespace(event: Event) -> list[tuple[str, Message]]:
    if event.action == "create":
        return [("/namespace/create", namespace_pb2.NamespaceCreate(name=event.name, labels=labels_of(event)))]
    if event.action == "update":
        return [("/namespace/update", namespace_pb2.NamespaceUpdate(name=event.name, labels=labels_of(event)))]
    if event.action == "remove":
        return [("/namespace/delete", namespace_pb2.NamespaceDelete(name=event.name))]
    return []


def _snapshot(event: Event) -> list[tuple[str, Message]]:
    a = event.attributes
    if event.action == "prepare":
        return [("/snapshot/prepare", snapshot_pb2.SnapshotPrepare(key=event.id, parent=a.get("parent", "")))]
    if event.action == "commit":
        return [("/snapshot/commit", snapshot_pb2.SnapshotCommit(key=a.get("key", ""), name=event.id))]
    if event.action == "remove":
        return [("/snapshot/remove", snapshot_pb2.SnapshotRemove(key=event.id))]
    return []


def _content(event: Event) -> list[tuple[str, Message]]:
    if event.action == "delete":
        return [("/content/delete", content_pb2.ContentDelete(digest=event.id))]
    return []


_BY_TYPE: dict[str, Callable[[Event], list[tuple[str, Message]]]] = {
    "container": _container, "image": _image, "namespace": _namespace, "snapshot": _snapshot, "content": _content}


def _envelope(event: Event, namespace: str, topic: str, message: Message | any_pb2.Any) -> Envelope:
    return Envelope(timestamp=timestamp(event.time), namespace=namespace, topic=topic, event=pack(message))


def envelopes(event: Event) -> list[Envelope]:
    """The envelopes containerd would have sent for a journal event, in order; none for one it has no topic for."""
    if event.type == JOURNAL_TYPE:
        return _journaled(event)
    if event.type == "gc" and event.action == "run":
        records, snapshots = gc_removals(event)
        return [*(_envelope(event, ns or event.namespace, "/content/delete", content_pb2.ContentDelete(digest=d))
                  for ns, d in records),
                *(_envelope(event, event.namespace, "/snapshot/remove", snapshot_pb2.SnapshotRemove(key=key))
                  for _, key in snapshots)]
    mapping = _BY_TYPE.get(event.type)
    if mapping is None:
        return []
    return [_envelope(event, event.namespace, topic, message) for topic, message in mapping(event)]


def _journaled(event: Event) -> list[Envelope]:
    a = event.attributes
    topic = a.get("topic") or event.action
    try:
        value = base64.b64decode(a.get("event", ""), validate=True)
    except ValueError:
        return []
    envelope = Envelope(timestamp=timestamp(event.time), namespace=event.namespace, topic=topic,
                        event=any_pb2.Any(type_url=a.get("typeUrl", ""), value=value))
    with contextlib.suppress(ValueError):
        if "timestamp" in a:
            envelope.timestamp.FromNanoseconds(int(a["timestamp"]))
    return [envelope]


def build(events: Iterable[Event]) -> list[Envelope]:
    """The envelopes of journal events (a Broadcast's ``build``)."""
    built: list[Envelope] = []
    for event in events:
        try:
            built.extend(envelopes(event))
        except Exception:
            log.exception("building a containerd event failed", extra={"type": event.type, "action": event.action})
    return built


# --- filters ----------------------------------------------------------------------------------


def message_field(message: Message, path: Sequence[str]) -> str | None:
    """A message's value at a field path, as containerd's generated
    fieldpath adaptors give it: string fields (None when empty), bools,
    ``<map>.<key>`` of string maps, nested messages; other kinds (numbers,
    timestamps, Any, repeated) are not filterable (None)."""
    if not path:
        return None
    field = message.DESCRIPTOR.fields_by_name.get(path[0])
    if field is None:
        return None
    value = getattr(message, path[0])
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if len(path) == 1 or field.message_type.fields_by_name["value"].type != field.TYPE_STRING:
            return None
        key = ".".join(path[1:])
        return str(value[key]) if key in value else None
    if field.is_repeated:
        return None
    if field.type == field.TYPE_STRING:
        return (str(value) or None) if len(path) == 1 else None
    if field.type == field.TYPE_BOOL:
        return ("true" if value else "false") if len(path) == 1 else None
    if field.type == field.TYPE_MESSAGE and field.message_type.full_name.startswith("containerd."):
        return message_field(value, path[1:]) if message.HasField(path[0]) else None
    return None


def adaptor(envelope: Envelope) -> Adaptor:
    """The fields containerd's event filters name (its envelope adaptor):
    ``namespace``, ``topic`` and ``event.<field>`` of the decoded event."""
    decoded: list[Message | None] = []

    def field(path: Sequence[str]) -> str | None:
        if not path:
            return None
        if path[0] == "namespace" and len(path) == 1:
            return envelope.namespace or None
        if path[0] == "topic" and len(path) == 1:
            return envelope.topic or None
        if path[0] == "event":
            if not decoded:
                decoded.append(unpack(envelope.event))
            return message_field(decoded[0], path[1:]) if decoded[0] is not None else None
        return None

    return field


# --- the service ------------------------------------------------------------------------------


def new_events(journal: Journal, *, blocking: Blocking) -> tuple[Broadcast[Envelope], list[Follower]]:
    """The journal's envelopes for Subscribe (a Recoverer: run its ``recover``
    after the parts whose recovery journals), and the loop that follows it."""
    broadcast: Broadcast[Envelope] = Broadcast(journal, build, cursor=CURSOR, blocking=blocking,
                                               what="containerd event")
    return broadcast, [Follower(broadcast, "containerd-events")]


class Events(events_pb2_grpc.EventsServicer):
    def __init__(self, deps: ContainerdDeps) -> None:
        self._deps = deps

    def _journal(self) -> Journal:
        if self._deps.journal is None:
            raise Unimplemented("this hawserd keeps no event journal")
        return self._deps.journal

    async def Publish(self, request: pb.PublishRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace = namespace_of(context)
            topic = validate_topic(request.topic)
            if not request.HasField("event"):
                raise InvalidArgument(f"publishing on {topic}: the event is missing")
            check_event_size(topic, request.event)
            await self._deps.blocking(journal_topic, self._journal(), namespace, topic, request.event)
            return empty_pb2.Empty()

        return await serve(context, "Publish", work())

    async def Forward(self, request: pb.ForwardRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            envelope = request.envelope
            try:
                check_identifier(envelope.namespace, "namespace")
            except InvalidArgument as exc:
                raise InvalidArgument(f"event envelope has invalid namespace: {exc.message}", hint=exc.hint) from None
            topic = validate_topic(envelope.topic)
            if not envelope.HasField("timestamp") or envelope.timestamp.ToNanoseconds() == 0:
                raise InvalidArgument("timestamp must be set on forwarded event")
            if not envelope.HasField("event"):
                raise InvalidArgument(f"forwarding on {topic}: the event is missing")
            check_event_size(topic, envelope.event)
            await self._deps.blocking(journal_topic, self._journal(), envelope.namespace, topic, envelope.event,
                                      timestamp_ns=envelope.timestamp.ToNanoseconds())
            return empty_pb2.Empty()

        return await serve(context, "Forward", work())

    async def Subscribe(self, request: pb.SubscribeRequest, context: Context) -> None:
        async def work() -> None:
            wanted = parse_filters(list(request.filters))
            events = self._deps.events
            if events is None:
                raise Unimplemented("this hawserd serves no containerd events")
            async for envelope in events.subscribe(lambda e: wanted.matches(adaptor(e))):
                await context.write(envelope)

        await serve(context, "Subscribe", work())


__all__ = [
    "CURSOR",
    "JOURNAL_TYPE",
    "MAX_EVENT_BYTES",
    "MESSAGES",
    "RUNTIME",
    "Events",
    "adaptor",
    "build",
    "check_event_size",
    "envelopes",
    "journal_topic",
    "labels_attributes",
    "labels_of",
    "message_field",
    "new_events",
    "pack",
    "record",
    "request_namespace",
    "type_url",
    "unpack",
    "validate_topic",
]
