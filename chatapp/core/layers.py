from channels.layers import BaseChannelLayer, get_channel_layer


def channel_layer() -> BaseChannelLayer:
    """The project's channel layer; settings.CHANNEL_LAYERS always configures one."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("CHANNEL_LAYERS configures no default layer.")
    return layer
