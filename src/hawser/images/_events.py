"""What an ImageService tells its observers: each image pulled, imported or
removed, each collection, each pull that failed, with what it cost.

The event journal and hawserd's metrics observe these; the service knows
neither."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hawser._dataclass import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hawser.metadata import GCReport

PULL, IMPORT, REMOVE, GC = "pull", "import", "remove", "gc"


@dataclass(frozen=True, slots=True, kw_only=True)
class PullStats:
    """What one pull did: compressed bytes fetched, layers fetched and layers
    already present, and seconds per stage (``resolve``, ``fetch``, ``unpack``
    (decompress and apply), ``commit``)."""

    bytes_fetched: int = 0
    layers_fetched: int = 0
    layers_present: int = 0
    seconds: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"bytes_fetched": self.bytes_fetched, "layers_fetched": self.layers_fetched,
                "layers_present": self.layers_present, "seconds": dict(self.seconds)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PullStats:
        seconds = data.get("seconds")
        return cls(bytes_fetched=int(data.get("bytes_fetched", 0)),  # type: ignore[call-overload]
                   layers_fetched=int(data.get("layers_fetched", 0)),  # type: ignore[call-overload]
                   layers_present=int(data.get("layers_present", 0)),  # type: ignore[call-overload]
                   seconds={str(k): float(v) for k, v in seconds.items()} if isinstance(seconds, dict) else {})


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageEvent:
    """``action`` is PULL, IMPORT, REMOVE or GC.  A pull that failed has
    ``error``, the error kind's name (``NotFound``, ``Unavailable``); a
    collection has its ``report``."""

    action: str
    namespace: str
    name: str = ""
    digest: str = ""
    error: str = ""
    stats: PullStats | None = None
    report: GCReport | None = None


ImageObserver = Callable[[ImageEvent], None]
