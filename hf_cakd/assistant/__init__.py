"""The FBT assistant (fusion) model, registered with AutoConfig / AutoModel."""

from transformers import AutoConfig, AutoModel

from .bridge import FusionBridge
from .configuration_assistant import AssistantConfig
from .modeling_assistant import AssistantModel, AssistantOutput, bridge_for_pair, fusion_roles

AutoConfig.register(AssistantConfig.model_type, AssistantConfig)
AutoModel.register(AssistantConfig, AssistantModel)

__all__ = ["AssistantConfig", "AssistantModel", "AssistantOutput", "FusionBridge", "bridge_for_pair", "fusion_roles"]
