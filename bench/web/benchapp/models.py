from django.db import models


class Order(models.Model):
    """The request's own write."""

    item = models.TextField()
