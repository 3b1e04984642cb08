# Runs after boot.py on every reset. Everything lives in the sensor package.
from sensor import app

try:
    app.run()
except KeyboardInterrupt:
    # Ctrl-C from the serial port (any mpremote command sends it): the board now waits at the
    # REPL, measuring and sending nothing, until it is reset. Say so, and how to resume.
    print("main: stopped by Ctrl-C; nothing is measured or sent until a reset "
          "(mpremote reset, or Ctrl-D at the >>> prompt)")
