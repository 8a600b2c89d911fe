"""What the container service needs from outside its part: images to make
containers from (the image service provides them; runtime does not import it)."""

from __future__ import annotations

from hawser.oci import ImageConfig

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # the roles are for type checkers; at run time plain base classes


class RunnableImage(Protocol):
    """A stored image, unpacked, that a container can be made from."""

    @property
    def name(self) -> str:
        """The stored name (a full reference)."""
        ...

    @property
    def image_id(self) -> str:
        """The config digest."""
        ...

    @property
    def config(self) -> ImageConfig:
        ...

    @property
    def top_snapshot(self) -> str:
        """The key of the top layer's committed snapshot; "" for an image without layers."""
        ...


class ImageResolver(Protocol):
    def runnable(self, text: str) -> RunnableImage:
        """The image ``text`` names (a reference, an image ID or a unique prefix
        of one). NotFound if there is none, InvalidArgument for an ambiguous
        prefix, FailedPrecondition if it is not unpacked. Read-only."""
        ...
