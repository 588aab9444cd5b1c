"""JupyterLab, Notebook 7 and Voila on loopback (:mod:`.servers`), driven in Debian's Chromium as
a user would (:mod:`.page`): the browser tests and the end-to-end notebook benchmark share them.
Needs the test dependencies (Playwright) and ``chromium``; nothing here runs in a kernel.
"""
