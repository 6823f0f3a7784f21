"""The web backend's routes: one module per page, plus the pages themselves."""
