"""One module per CLI verb, each with one public function ``run(cfg, **paths)``.

A verb reads its inputs from explicit paths, writes its outputs atomically, and records the
protocol (config section, seeds, versions) next to what it writes.
"""
