"""Operations: one plain typed function per command, no click, no rich.

The CLI parses arguments, calls one operation and renders what it returns; tests and other
programs call the same functions. Errors are ``migrator.errors`` exceptions.
"""
