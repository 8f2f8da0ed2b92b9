"""The MuseTalk generator: masked-crop latents, one UNet step, VAE (or TAESD) decode."""
