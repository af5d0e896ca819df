from django.apps import AppConfig


class ChannelServerConfig(AppConfig):
    name = "channelserver"
    verbose_name = "channelserver"
