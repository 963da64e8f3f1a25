"""One module per chapter of the book, named as in ``chapters/``; :mod:`.common` holds what
several chapters share (configuration keys and labels, statistics, decision rules, constants).

Each chapter module computes its chapter's numbers in one function that returns plain data,
the verdicts that follow from those numbers, and the chapter's figures; the chapter notebook
calls them and glues the result. The science (``rnnbook.data``, ``rnnbook.training``, ...)
never imports this package.
"""
