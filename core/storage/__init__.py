"""Storage shared by the snapshotter drivers — written once so the rules cannot drift.

==============================  ===========================================================
``core.storage.metastore``      :class:`MetaStore`: the parent-chain bookkeeping and the rules
                                of the contract (SQLite), as containerd's metastore
``core.storage.snapshotter``    :class:`DirectorySnapshotter`: the contract over snapshot
                                directories; a driver adds population and mounts
``core.storage.layer``          :func:`apply_layer`: unpack a layer tar stream safely, with
                                whiteouts in overlay or delete form (:class:`WhiteoutMode`)
``core.storage.fs``             faithful tree copies, disk usage, removal
``core.storage.mount``          :func:`mount_all` / :func:`unmount`: perform ``Mount`` values
==============================  ===========================================================

The contract itself is :mod:`core.contracts.storage`; the drivers are ``drivers.storage_overlay``
and ``drivers.storage_vfs``; the conformance suite is :mod:`core.testing.storage`.
Submodules are imported on use: this package's import stays light.
"""
