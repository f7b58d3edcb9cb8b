"""The torch-free core: tasks, data readers, tokenizer, encodings, metrics, files and errors.

Nothing under mtcli.core imports torch (a test checks it in a subprocess)."""
