"""`python -m tickwise`: the same command line as the `tickwise` script."""

from tickwise.cli import run

if __name__ == "__main__":
    run()
