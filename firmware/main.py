# Runs after boot.py on every reset. Everything lives in the sensor package.
from sensor import app

app.run()
