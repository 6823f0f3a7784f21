"""`tritonfleet up`: a whole cluster on one machine (`cluster.py`, which the end-to-end tests use
too), the restarts of the services that may die on their own (`supervisor.py`), the development
account (`devaccount.py`), and the command (`command.py`)."""
