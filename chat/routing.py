from django.urls import path

from chat.consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/", ChatConsumer.as_asgi()),
    # A client written from the seed's guide connects to ws://host:port with no path.
    path("", ChatConsumer.as_asgi()),
]
