import sys

from stream_app.commands.main import main

if __name__ == "__main__":  # not when a spawned process imports this module again
    sys.exit(main())
