"""The exported models in other consumers: the portability matrix and the web demo."""
