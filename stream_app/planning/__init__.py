"""Planning token purchases: the engine's runs over a history, the result, its text,
JSON and HTML forms, and the schedule that writes them every period."""
