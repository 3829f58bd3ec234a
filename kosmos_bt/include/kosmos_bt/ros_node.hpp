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

// What every Kosmos BT node shares: the rclcpp node it talks through (the
// tree blackboard's "node" entry) and a callback group of its own, spun on
// each tick, so a tree needs no executor thread for these nodes (the design
// behaviortree_ros2 uses; that package is not in every distribution).

#ifndef KOSMOS_BT__ROS_NODE_HPP_
#define KOSMOS_BT__ROS_NODE_HPP_

#include <chrono>
#include <string>

#include "behaviortree_cpp/tree_node.h"
#include "rclcpp/rclcpp.hpp"

namespace kosmos_bt
{

/// The blackboard key holding the rclcpp::Node::SharedPtr the nodes use.
constexpr const char * kNodeKey = "node";

/// Return the tree's rclcpp node; throws BT::RuntimeError naming the fix.
rclcpp::Node::SharedPtr nodeFrom(const BT::NodeConfig & config);

/// A callback group and the executor that spins only it.
class Spinner
{
public:
  explicit Spinner(const rclcpp::Node::SharedPtr & node);

  rclcpp::CallbackGroup::SharedPtr group() const {return group_;}

  /// Run whatever is ready (responses, feedback, messages); never blocks.
  void spinSome() {executor_.spin_some();}

  /// Spin until ``future`` is ready or ``timeout`` passes; true when ready.
  template<class FutureT>
  bool spinUntil(const FutureT & future, std::chrono::milliseconds timeout)
  {
    return executor_.spin_until_future_complete(future, timeout) ==
           rclcpp::FutureReturnCode::SUCCESS;
  }

private:
  rclcpp::CallbackGroup::SharedPtr group_;
  rclcpp::executors::SingleThreadedExecutor executor_;
};

}  // namespace kosmos_bt

#endif  // KOSMOS_BT__ROS_NODE_HPP_
