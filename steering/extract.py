"""`python -m steering.extract [demo.yaml] [--out FILE]`: write the config's steering vectors."""

from .vectors import main

if __name__ == "__main__":
    raise SystemExit(main())
