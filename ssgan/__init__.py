"""ssgan: the semi-supervised GAN of Salimans et al. (2016), built only on minigrad."""
