"""What a person looks at: the JupyterLab explorer (``explore`` logic, ``widgets`` its thin
view), HTML exports of executed notebooks (``html``) and the generated blocks of the docs
(``docs``).

Imports ``pipeline``, ``analysis``, ``plots`` and ``core``.
"""
