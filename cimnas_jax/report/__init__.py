"""Rendering of results: Markdown tables, CSV, JSON and plots, from the stages' results.

``run`` writes the main job's report, ``search`` the search CLI's outputs, ``labels`` the
labelling CLI's summary; ``tables``, ``plots`` and ``designs`` are the shared pieces. Nothing
here computes a result: it formats what the stages measured, naming each number's source.
"""
