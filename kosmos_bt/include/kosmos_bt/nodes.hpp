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

// The Kosmos BT nodes. Each is documented by its ports (providedPorts), which
// Groot and the tree XML use; README.md shows them in a tree.

#ifndef KOSMOS_BT__NODES_HPP_
#define KOSMOS_BT__NODES_HPP_

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "behaviortree_cpp/action_node.h"
#include "behaviortree_cpp/bt_factory.h"
#include "behaviortree_cpp/condition_node.h"
#include "kosmos_bt/goal_node.hpp"
#include "kosmos_ros_interfaces/action/ask.hpp"
#include "kosmos_ros_interfaces/action/locate.hpp"
#include "kosmos_ros_interfaces/srv/set_queries.hpp"
#include "vision_msgs/msg/detection2_d_array.hpp"

namespace kosmos_bt
{

/// Ask a question about a box (or the whole image): ~/ask as an action.
class KosmosAsk : public GoalNode<kosmos_ros_interfaces::action::Ask>
{
public:
  KosmosAsk(const std::string & name, const BT::NodeConfig & config);
  static BT::PortsList providedPorts();

protected:
  std::string makeGoal(Goal & goal) override;
  BT::NodeStatus onResult(const Result & result) override;
  void onFeedback(const Feedback & feedback) override;
};

/// Ground a phrase: its best box, and its 3D pose where there is depth.
class KosmosLocate : public GoalNode<kosmos_ros_interfaces::action::Locate>
{
public:
  KosmosLocate(const std::string & name, const BT::NodeConfig & config);
  static BT::PortsList providedPorts();

protected:
  std::string makeGoal(Goal & goal) override;
  BT::NodeStatus onResult(const Result & result) override;
};

/// Replace the node's standing queries (~/set_queries).
class KosmosSetQueries : public BT::StatefulActionNode
{
public:
  using Service = kosmos_ros_interfaces::srv::SetQueries;
  KosmosSetQueries(const std::string & name, const BT::NodeConfig & config);
  static BT::PortsList providedPorts();

protected:
  BT::NodeStatus onStart() override;
  BT::NodeStatus onRunning() override;
  void onHalted() override;

private:
  rclcpp::Node::SharedPtr node_;
  Spinner spinner_;
  std::string service_name_;
  rclcpp::Client<Service>::SharedPtr client_;
  std::shared_ptr<rclcpp::Client<Service>::FutureAndRequestId> pending_;
  std::chrono::steady_clock::time_point deadline_;
};

/// SUCCESS when a standing query was seen above a score lately.
class KosmosSeen : public BT::ConditionNode
{
public:
  using Detections = vision_msgs::msg::Detection2DArray;
  KosmosSeen(const std::string & name, const BT::NodeConfig & config);
  static BT::PortsList providedPorts();

protected:
  BT::NodeStatus tick() override;

private:
  struct Sighting
  {
    std::chrono::steady_clock::time_point when;
    vision_msgs::msg::Detection2D detection;
  };
  void onDetections(const Detections & msg);

  rclcpp::Node::SharedPtr node_;
  Spinner spinner_;
  std::string topic_;
  rclcpp::Subscription<Detections>::SharedPtr subscription_;
  std::map<std::string, std::deque<Sighting>> seen_;  // newest first
};

/// Register the four nodes (what the plugin's BT_REGISTER_NODES does).
void registerNodes(BT::BehaviorTreeFactory & factory);

}  // namespace kosmos_bt

#endif  // KOSMOS_BT__NODES_HPP_
