"""The `coachlab` command line (and later the Gradio web app)."""
