"""The status and logout pages: templates, translations, labels."""
