"""Real-browser test helpers: a JupyterLab server on loopback and Playwright driving Debian's chromium."""
