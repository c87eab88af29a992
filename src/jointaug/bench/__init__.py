"""The benchmark room: every benchmark of the project, shared by ``jointaug bench`` and ``benchmarks/``.

- :mod:`.common`: machine, load average, versions, round-robin timing, JSON + Markdown writing;
- :mod:`.images`: benchmark images (CIFAR-10 archive or procedural stand-ins);
- :mod:`.augment`: view-rendering throughput (``jointaug bench augment``);
- :mod:`.train`: training throughput and data wait through the trainer (``jointaug bench train``);
- :mod:`.backbone`: forward + backward step throughput of backbones (``jointaug bench backbone``);
- :mod:`.cli`: the ``jointaug bench`` subcommand (one line per benchmark in ``BENCHMARKS``).

The room sits at the top beside the CLI: it may import any other room, and none imports it.
Submodules are imported on use, so importing this package costs nothing.
"""
