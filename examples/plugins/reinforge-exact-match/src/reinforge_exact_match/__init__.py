"""An exact-match reward environment, shipped as a reinforge plugin package."""
