from bgnn_cli.main import app

app(prog_name="bgnn")
