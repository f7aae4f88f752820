"""ssgan: the semi-supervised GAN of Salimans et al. (2016), built only on minigrad."""
# Imported first so minigrad can set OpenBLAS's thread timeout before NumPy loads (see minigrad/__init__.py).
import minigrad  # noqa: F401
