"""What every command gets: the effective config and, on demand, the store; and echo."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from hawser.config import Config
    from hawser.events import Journal
    from hawser.images import ImageService
    from hawser.runtime import ContainerManager
    from hawser.store import Store


class CliContext:
    def __init__(self, *, config_path: str | None, root: str | None, state: str | None,
                 registry_config_dir: str | None, snapshotter: str | None, debug: bool,
                 namespace: str | None = None) -> None:
        import os

        self._config_path = config_path
        # As containerd's clients choose theirs: the flag, then the environment, then "default".
        self.namespace = namespace or os.environ.get("HAWSER_NAMESPACE") or "default"
        # The global flags, as hawser.config.apply_overrides takes them (dotted key -> value or None).
        self._overrides = {"root": root, "state": state, "snapshotter": snapshotter,
                           "registry.config_path": registry_config_dir}
        self.debug = debug
        self._config: Config | None = None
        self._store: Store | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from hawser.config import apply_overrides, load_config

            self._config = apply_overrides(load_config(self._config_path), self._overrides)
        return self._config

    def store(self, *, to_free_space: bool = False) -> Store:
        """The store, opened on first use (``to_free_space``: see ``Store.open``)."""
        if self._store is None:
            from hawser.metadata import check_identifier
            from hawser.store import Store

            check_identifier(self.namespace, "namespace")
            self._store = Store.open(self.config, namespace=self.namespace, to_free_space=to_free_space)
        return self._store

    def images(self, *, to_free_space: bool = False) -> ImageService:
        """The image service, its changes journaled."""
        from hawser.events import image_observer
        from hawser.images import ImageService

        images = ImageService(self.store(to_free_space=to_free_space))
        images.observers.append(image_observer(self.journal()))
        return images

    def containers(self, *, to_free_space: bool = False) -> ContainerManager:
        """The container manager, its changes journaled."""
        from hawser.events import container_observer
        from hawser.runtime import ContainerManager

        images = self.images(to_free_space=to_free_space)
        manager = ContainerManager.of(images.store, images)
        manager.observers.append(container_observer(self.journal()))
        from hawser.cli._lifecycle import start_observer

        manager.observers.append(start_observer(self, manager))  # healthcheck monitors; restart policies' specs
        from hawser.pods import ContainerNetworks

        manager.networking = ContainerNetworks.of(self.config)  # touches nothing until a container needs it
        return manager

    def hawser_argv(self, *args: str) -> list[str]:
        """A hawser command line with this one's store, state and config (conmon
        runs it on the command's behalf when a container exits: ``run -d --rm``)."""
        import os

        argv = [sys.executable, "-m", "hawser.cli._run", "-n", self.namespace]
        given = {"--config": self._config_path, "--root": self._overrides["root"],
                 "--state": self._overrides["state"], "--registry-config-dir": self._overrides["registry.config_path"]}
        for flag, value in given.items():
            if value is not None:  # conmon runs it in the container's bundle: paths made absolute
                argv += [flag, os.path.abspath(value)]
        if self._overrides["snapshotter"] is not None:
            argv += ["--snapshotter", self._overrides["snapshotter"]]
        return [*argv, *args]

    def journal(self) -> Journal:
        """The store's event journal (``hawser events``), which every command that changes something appends to."""
        from hawser.events import Journal

        return Journal.of_state(self.config.state)

    def close(self) -> None:
        """Close the store's databases: the last connection to close folds SQLite's
        write-ahead log into the database and deletes it (the console script
        exits without the interpreter's teardown, which would otherwise do it)."""
        if self._store is not None:
            self._store.close()
            self._store = None


def echo(text: object = "", *, err: bool = False, end: str = "\n") -> None:
    """print, flushed at once: lines reach a pipe as they happen (stop, stats, pull progress)
    and keep their order with container output, which is written to the binary streams."""
    print(text, end=end, file=sys.stderr if err else sys.stdout, flush=True)
