"""The container manager of each namespace of a store, for hawserd: the
Tasks service runs a namespace's tasks with it, and the exit watcher reads
an exit through it (the exits directory is the store's, and a container id
is one container's in every namespace)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hawser.events import Journal
    from hawser.metadata import Container
    from hawser.runtime import ContainerManager
    from hawser.store import Store


class ContainerManagers:
    """One ``ContainerManager`` per namespace, made on first use, whose changes
    go to ``journal``; ``known``: managers made elsewhere (the CRI's, for
    k8s.io, with its observers).  Safe to share between threads: two threads
    may make a namespace's manager at once, and one of them is kept."""

    def __init__(self, store: Store, journal: Journal | None,
                 known: dict[str, ContainerManager] | None = None) -> None:
        self.store = store
        self.journal = journal
        self._managers: dict[str, ContainerManager] = dict(known or {})

    def __call__(self, namespace: str) -> ContainerManager:
        manager = self._managers.get(namespace)
        if manager is None:
            from hawser.images import ImageService
            from hawser.runtime import ContainerManager

            in_namespace = self.store.in_namespace(namespace)
            manager = ContainerManager.of(in_namespace, ImageService(in_namespace))
            if self.journal is not None:
                from hawser.events import container_observer

                manager.observers.append(container_observer(self.journal))
            manager = self._managers.setdefault(namespace, manager)
        return manager

    def locate(self, container_id: str) -> tuple[ContainerManager, Container] | None:
        """The manager and record of the container with this id, in whichever namespace has it."""
        record = self.store.metadata.containers.find(container_id)
        return None if record is None else (self(record.namespace), record)
