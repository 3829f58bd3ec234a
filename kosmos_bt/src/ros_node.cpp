// Copyright 2026 The kosmos_ros Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

#include "kosmos_bt/ros_node.hpp"

#include <string>

namespace kosmos_bt
{

rclcpp::Node::SharedPtr nodeFrom(const BT::NodeConfig & config)
{
  rclcpp::Node::SharedPtr node;
  if (!config.blackboard || !config.blackboard->get(kNodeKey, node) || !node) {
    throw BT::RuntimeError(
            "kosmos_bt nodes need an rclcpp::Node::SharedPtr in the tree's "
            "blackboard under \"", kNodeKey, "\": blackboard->set(\"",
            kNodeKey, "\", node) before creating the tree");
  }
  return node;
}

Spinner::Spinner(const rclcpp::Node::SharedPtr & node)
: group_(node->create_callback_group(
      rclcpp::CallbackGroupType::MutuallyExclusive, false))
{
  executor_.add_callback_group(group_, node->get_node_base_interface());
}

}  // namespace kosmos_bt
