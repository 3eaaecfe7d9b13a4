public enum SignalingPlaceholder {}
