"""The book machinery: ``rnnbook build`` (:mod:`.build`, :mod:`.cli`), the parameter registry
(:mod:`.params`), the cache of executed chapters (:mod:`.chapter_cache`), and what a chapter's
page uses to show its results (:mod:`.pages`, :mod:`.provenance`).

The science (``rnnbook.data``, ``rnnbook.training``, ...) never imports this package.
"""
